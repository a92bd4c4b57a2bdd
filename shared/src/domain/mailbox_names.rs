//! Localized names of a new user's default mailboxes.
//!
//! When WildDuck creates a user it names the special-use folders in the
//! user's language, using a fixed translation table keyed by a short language
//! code. Eider reproduces that table so accounts created through either
//! implementation end up with the same folder paths. The language value is
//! matched the way WildDuck does it: lowercased, cut at the first `_`
//! (`et_EE` → `et`), and anything empty or unknown falls back to English.
//! Only `_` separates a region; `et-EE` is an unknown code, as in WildDuck.
//!
//! `INBOX` is never translated, so it is not part of this table. WildDuck has
//! no Archive folder; the `archive` names here are Eider's own translations.
//! Where WildDuck's table has no name for a folder (`ber`, `kn` and `tzl` have
//! none at all, `ur` lacks three), the English name is used, as it is for the
//! Archive folder of those three untranslated languages.

/// The display names of the special-use mailboxes created with a new user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultMailboxNames {
    /// Name of the `\Sent` mailbox.
    pub sent: &'static str,
    /// Name of the `\Trash` mailbox.
    pub trash: &'static str,
    /// Name of the `\Drafts` mailbox.
    pub drafts: &'static str,
    /// Name of the `\Junk` mailbox.
    pub junk: &'static str,
    /// Name of the `\Archive` mailbox.
    pub archive: &'static str,
}

/// English names: the default, and the fallback for every missing entry.
const ENGLISH: DefaultMailboxNames = DefaultMailboxNames {
    sent: "Sent Mail",
    trash: "Trash",
    drafts: "Drafts",
    junk: "Junk",
    archive: "Archive",
};

/// Returns the default mailbox names for a user's `language` setting.
///
/// The value is lowercased and cut at the first `_`; `None`, an empty value
/// or a code without a translation gives the English names. Each name that
/// the table lacks for a known language also falls back to English.
pub fn default_mailbox_names(language: Option<&str>) -> DefaultMailboxNames {
    let Some(entry) = language.and_then(find_entry) else {
        return ENGLISH;
    };
    DefaultMailboxNames {
        sent: entry.sent.unwrap_or(ENGLISH.sent),
        trash: entry.trash.unwrap_or(ENGLISH.trash),
        drafts: entry.drafts.unwrap_or(ENGLISH.drafts),
        junk: entry.junk.unwrap_or(ENGLISH.junk),
        archive: entry.archive.unwrap_or(ENGLISH.archive),
    }
}

/// Finds the table row for a raw language value, if there is one.
fn find_entry(language: &str) -> Option<&'static Entry> {
    let lowered = language.to_lowercase();
    // `split` always yields at least one piece, so this is never `None`.
    let code = lowered.split('_').next().unwrap_or_default();
    if code.is_empty() {
        return None;
    }
    TABLE.iter().find(|entry| entry.code == code)
}

/// One language's names; `None` where no translation exists.
struct Entry {
    code: &'static str,
    sent: Option<&'static str>,
    trash: Option<&'static str>,
    drafts: Option<&'static str>,
    junk: Option<&'static str>,
    archive: Option<&'static str>,
}

/// A row with every name present, to keep the table readable.
const fn full(
    code: &'static str,
    sent: &'static str,
    trash: &'static str,
    drafts: &'static str,
    junk: &'static str,
    archive: &'static str,
) -> Entry {
    Entry {
        code,
        sent: Some(sent),
        trash: Some(trash),
        drafts: Some(drafts),
        junk: Some(junk),
        archive: Some(archive),
    }
}

/// The translation table, sorted by code. The first four names are WildDuck's
/// (`lib/translations.js`), byte for byte — including the zero-width joiners
/// in `fa` and `ml` and the non-NFC `ড়` in `bn` — because they become mailbox
/// paths that must match what WildDuck would have created.
/// Row order: code, Sent, Trash, Drafts, Junk, Archive.
#[rustfmt::skip] // one row per language reads better than rustfmt's layout
static TABLE: &[Entry] = &[
    full("ar", "المرسل", "المهملات", "المسودات", "غير المرغوب", "الأرشيف"),
    full("ast", "Unviaos", "Papelera", "Borradores", "Puxarra", "Archivu"),
    full("az", "Göndərilənlər", "Səbət", "Qaralamalar", "Spam", "Arxiv"),
    full("be", "Дасланыя", "Сметніца", "Чарнавікі", "Спам", "Архіў"),
    Entry {
        code: "ber",
        sent: None,
        trash: None,
        drafts: None,
        junk: None,
        archive: None,
    },
    full("bg", "Изпратени", "Кошче", "Чернови", "Спам", "Архив"),
    full("bn", "প্রেরিত(পাঠানো মেইল)", "ডাস্টবিন", "খসড়া", "আজেবাজে মেইল", "আর্কাইভ"),
    full("br", "Kaset", "Pod-lastez", "Brouilhedoù", "Stroboù", "Dielloù"),
    full("bs", "Poslano", "Smeće", "Skice", "Spam", "Arhiva"),
    full("ca", "Enviats", "Paperera", "Esborranys", "Correu brossa", "Arxiu"),
    full("cs", "Odeslané", "Koš", "Rozepsané", "Spam", "Archiv"),
    full("cy", "Danfonwyd", "Sbwriel", "Drafftiau", "Sothach", "Archif"),
    full("da", "Sendt post", "Papirkurv", "Kladder", "Spam", "Arkiv"),
    full("de", "Gesendet", "Gelöscht", "Entwürfe", "Spam", "Archiv"),
    full("el", "Απεσταλμένα", "Κάδος Απορριμάτων", "Πρόχειρα", "Ανεπιθύμητα", "Αρχειοθήκη"),
    full("en", "Sent Mail", "Trash", "Drafts", "Junk", "Archive"),
    full("eo", "Senditujo", "Rubujo", "Malnetujo", "Spamujo", "Arkivo"),
    full("es", "Enviados", "Papelera", "Borradores", "No deseado", "Archivo"),
    full("et", "Saadetud kirjad", "Prügikast", "Mustandid", "Rämpspost", "Arhiiv"),
    full("eu", "Bidalitakoak", "Zakarrontzia", "Zirriborroak", "Zabor-posta", "Artxiboa"),
    full("fa", "ارسال شده", "زباله\u{200c}دان", "پیش\u{200c}نویس\u{200c}ها", "بنجل", "بایگانی"),
    full("fi", "Lähetetyt", "Roskakori", "Luonnokset", "Roskaposti", "Arkisto"),
    full("fo", "Sent", "Skrell", "Skitsur", "Møsn", "Skjalasavn"),
    full("fr", "Envoyés", "Corbeille", "Brouillons", "Pourriels", "Archives"),
    full("fy", "Ferstjoerd", "Jiskefet", "Konsepten", "Spam", "Argyf"),
    full("ga", "Amach", "Bosca bruscair", "Dréachtaí", "Dramhaíl", "Cartlann"),
    full("gl", "Enviados", "Lixo", "Borradores", "Correo lixo", "Arquivo"),
    full("he", "נשלח", "אשפה", "טיוטות", "זבל", "ארכיון"),
    full("hi", "भेजा गया", "रद्दी", "ड्राफ़ट", "स्पैम", "संग्रह"),
    full("hr", "Poslano", "Smeće", "Predlošci", "Spam", "Arhiva"),
    full("hu", "Küldöttek", "Kuka", "Piszkozatok", "Kéretlen", "Archívum"),
    full("hy", "Ուղարկված", "Աղբարկղ", "Սևագրեր", "Թափոն", "Արխիվ"),
    full("ia", "Inviate", "Corbe a papiro", "Versiones provisori", "Posta indesirate", "Archivo"),
    full("id", "Terkirim", "Surat Terhapus", "Konsep", "Sampah", "Arsip"),
    full("is", "Sent", "Rusl", "Drög", "Ruslpóstur", "Skjalasafn"),
    full("it", "Inviata", "Cestino", "Bozze", "Spam", "Archivio"),
    full("ja", "送信済み", "ごみ箱", "下書き", "迷惑メール", "アーカイブ"),
    full("ka", "გაგზავნილი", "წაშლილი", "დროებითი", "სპამი", "არქივი"),
    full("km", "សំបុត្រដែលបានបញ្ជូន", "ធុងសំរាម", "សំបុត្រពង្រៀង", "សំបុត្រមិនល្អ", "បណ្ណសារ"),
    Entry {
        code: "kn",
        sent: None,
        trash: None,
        drafts: None,
        junk: None,
        archive: None,
    },
    full("ko", "보낸 편지함", "지운 편지함", "임시 보관함", "스팸 편지함", "보관함"),
    full("ku", "Şandî", "Çop", "Hilanînî", "Biikêrnehatî", "Arşîv"),
    full("lb", "Verschéckt", "Poubelle", "Brouillonen", "Spam", "Archiv"),
    full("lt", "Išsiųsti laiškai", "Šiukšlinė", "Juodraščiai", "Brukalas", "Archyvas"),
    full("lv", "Nosūtītās", "Papīrgrozs", "Uzmetumi", "Mēstules", "Arhīvs"),
    full("mk", "Пратени", "Корпа", "Непратени", "Ѓубре", "Архива"),
    full("ml", "അയച്ചവ", "ചവറ്റുകുട്ട", "പൂര്\u{200d}ത്തിയാകാത്തവ", "ആവശ്യമില്ലാത്തവ", "ആർക്കൈവ്"),
    full("mn", "Илгээсэн", "Хогийн сав", "Ноорог", "Спам", "Архив"),
    full("mr", "पाठवलेले", "कचरा पेटी", "मसुदा", "नको असलेले कचरा संदेश", "संग्रह"),
    full("ms", "Hantar", "Tong Sampah", "Draf", "Junk", "Arkib"),
    full("nb", "Sendt", "Slettet", "Kladd", "Spam", "Arkiv"),
    full("ne", "पठईएका मेलहरु", "रद्दी टोकरी", "ड्राफ्टहरू", "स्पाम", "अभिलेख"),
    full("nl", "Verzonden berichten", "Prullenbak", "Concepten", "Spam", "Archief"),
    full("nn", "Sendt", "Sletta", "Kladd", "Søppel", "Arkiv"),
    full("pl", "Wysłane", "Kosz", "Kopie robocze", "Spam", "Archiwum"),
    full("ps", "لېږل شوي ليکونه", "کثافت دانۍ", "بارليک", "جنک", "آرشیف"),
    full("pt", "Enviados", "Lixeira", "Rascunhos", "Spam", "Arquivo"),
    full("ro", "Trimise", "Gunoi", "Ciorne", "Spam", "Arhivă"),
    full("ru", "Отправленные", "Корзина", "Черновики", "СПАМ", "Архив"),
    full("si", "යැවූ", "ඉවතලන බඳුන", "කටු සටහන්", "සුන්බුන්", "සංරක්ෂිත"),
    full("sk", "Odoslané", "Kôš", "Koncepty", "Nevyžiadaná pošta", "Archív"),
    full("sl", "Poslano", "Smeti", "Osnutki", "Neželena sporočila", "Arhiv"),
    full("sq", "Të dërguar", "Hedhurina", "Skica", "Të pavlerë", "Arkiv"),
    full("sr", "Послате", "Смеће", "Нацрти", "Отпад", "Архива"),
    full("sv", "Skickat", "Papperskorg", "Utkast", "Skräp", "Arkiv"),
    full("ta", "அனுப்பிய அஞ்சல்", "குப்பை", "வரைவுகள்", "எரிதம்", "காப்பகம்"),
    full("th", "กล่องขาออก", "ถังขยะ", "กล่องจดหมายร่าง", "กล่องจดหมายขยะ", "เก็บถาวร"),
    full("ti", "ዝተለኣኸ", "እንዳጉሓፍ", "ወጡን ጽሑፍ", "እንዳቅንጠመንጢ", "ማህደር"),
    full("tr", "Giden", "Çöp", "Taslak", "İstenmeyen", "Arşiv"),
    Entry {
        code: "tzl",
        sent: None,
        trash: None,
        drafts: None,
        junk: None,
        archive: None,
    },
    full("uk", "Надіслані", "Кошик", "Чернетки", "Спам", "Архів"),
    Entry {
        code: "ur",
        sent: None,
        trash: None,
        drafts: Some("ڈرافٹ"),
        junk: None,
        archive: Some("آرکائیو"),
    },
    full("uz", "Jo`natilgan xatlar", "Savat", "Qoralama xatlar", "SPAM", "Arxiv"),
    full("vi", "Đã gửi", "Thùng rác", "Thư nháp", "Thư rác", "Lưu trữ"),
    full("zh", "寄件備份", "垃圾桶", "草稿匣", "垃圾郵件", "封存"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_is_the_default() {
        assert_eq!(default_mailbox_names(None), ENGLISH);
        assert_eq!(default_mailbox_names(Some("")), ENGLISH);
        assert_eq!(default_mailbox_names(Some("en")), ENGLISH);
        assert_eq!(ENGLISH.sent, "Sent Mail");
        assert_eq!(ENGLISH.archive, "Archive");
    }

    #[test]
    fn estonian() {
        let names = default_mailbox_names(Some("et"));
        assert_eq!(
            names,
            DefaultMailboxNames {
                sent: "Saadetud kirjad",
                trash: "Prügikast",
                drafts: "Mustandid",
                junk: "Rämpspost",
                archive: "Arhiiv",
            }
        );
    }

    #[test]
    fn german() {
        let names = default_mailbox_names(Some("de"));
        assert_eq!(
            names,
            DefaultMailboxNames {
                sent: "Gesendet",
                trash: "Gelöscht",
                drafts: "Entwürfe",
                junk: "Spam",
                archive: "Archiv",
            }
        );
    }

    #[test]
    fn unknown_language_is_english() {
        assert_eq!(default_mailbox_names(Some("xx")), ENGLISH);
        assert_eq!(default_mailbox_names(Some("klingon")), ENGLISH);
        // Only `_` separates the region, as in WildDuck.
        assert_eq!(default_mailbox_names(Some("et-EE")), ENGLISH);
        assert_eq!(default_mailbox_names(Some("_et")), ENGLISH);
    }

    #[test]
    fn code_is_lowercased_and_cut_at_underscore() {
        let et = default_mailbox_names(Some("et"));
        assert_eq!(default_mailbox_names(Some("et_EE")), et);
        assert_eq!(default_mailbox_names(Some("ET")), et);
        assert_eq!(default_mailbox_names(Some("Et_ee_x")), et);
        assert_eq!(default_mailbox_names(Some("pt_BR")).sent, "Enviados");
    }

    #[test]
    fn missing_names_fall_back_to_english_per_field() {
        assert_eq!(default_mailbox_names(Some("ber")), ENGLISH);
        assert_eq!(default_mailbox_names(Some("kn")), ENGLISH);
        assert_eq!(default_mailbox_names(Some("tzl")), ENGLISH);
        let ur = default_mailbox_names(Some("ur"));
        assert_eq!(ur.drafts, "ڈرافٹ");
        assert_eq!(ur.sent, ENGLISH.sent);
        assert_eq!(ur.trash, ENGLISH.trash);
        assert_eq!(ur.junk, ENGLISH.junk);
        assert_ne!(ur.archive, ENGLISH.archive);
    }

    #[test]
    fn every_name_is_a_usable_path_segment() {
        for entry in TABLE {
            let names = default_mailbox_names(Some(entry.code));
            for name in [
                names.sent,
                names.trash,
                names.drafts,
                names.junk,
                names.archive,
            ] {
                assert!(!name.trim().is_empty(), "{}: empty name", entry.code);
                assert!(!name.contains('/'), "{}: {name:?} has a '/'", entry.code);
                assert_ne!(name.to_uppercase(), "INBOX", "{}", entry.code);
            }
            // Two default folders with one name would collide as paths.
            let mut all = [
                names.sent,
                names.trash,
                names.drafts,
                names.junk,
                names.archive,
            ];
            all.sort_unstable();
            let before = all.len();
            let mut unique = all.to_vec();
            unique.dedup();
            assert_eq!(unique.len(), before, "{}: duplicate names", entry.code);
        }
    }

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(TABLE.windows(2).all(|pair| pair[0].code < pair[1].code));
        assert!(
            TABLE
                .iter()
                .all(|entry| !entry.code.contains('_') && entry.code == entry.code.to_lowercase())
        );
        assert_eq!(TABLE.len(), 75);
    }
}
