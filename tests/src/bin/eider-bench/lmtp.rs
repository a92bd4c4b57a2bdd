//! A minimal LMTP client (RFC 2033) for the ingest figure: one session, many messages, one
//! recipient each. Checks every reply code; dot-stuffs the data.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Session {
    stream: BufReader<TcpStream>,
    line: String,
}

impl Session {
    pub async fn connect(port: u16) -> Session {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("LMTP connect");
        stream.set_nodelay(true).unwrap();
        let mut session = Session {
            stream: BufReader::new(stream),
            line: String::new(),
        };
        session.expect(220, "greeting").await;
        session.command("LHLO bench.example\r\n", 250).await;
        session
    }

    /// Reads one (possibly multi-line) reply and checks its code.
    async fn expect(&mut self, code: u16, what: &str) {
        loop {
            self.line.clear();
            let n = self.stream.read_line(&mut self.line).await.unwrap();
            assert!(n > 0, "LMTP server closed the connection ({what})");
            let got: u16 = self.line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            assert_eq!(got, code, "LMTP {what}: {}", self.line.trim_end());
            if self.line.as_bytes().get(3) != Some(&b'-') {
                return;
            }
        }
    }

    async fn command(&mut self, line: &str, code: u16) {
        self.stream
            .get_mut()
            .write_all(line.as_bytes())
            .await
            .unwrap();
        self.expect(code, line.trim_end()).await;
    }

    /// Delivers `raw` from `sender` to `recipient`.
    pub async fn deliver(&mut self, sender: &str, recipient: &str, raw: &[u8]) {
        self.command(&format!("MAIL FROM:<{sender}>\r\n"), 250)
            .await;
        self.command(&format!("RCPT TO:<{recipient}>\r\n"), 250)
            .await;
        self.command("DATA\r\n", 354).await;
        let mut data = Vec::with_capacity(raw.len() + raw.len() / 64 + 8);
        let mut at_line_start = true;
        for &b in raw {
            if at_line_start && b == b'.' {
                data.push(b'.');
            }
            data.push(b);
            at_line_start = b == b'\n';
        }
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.stream.get_mut().write_all(&data).await.unwrap();
        self.expect(250, "end of DATA").await;
    }

    pub async fn quit(mut self) {
        let _ = self.stream.get_mut().write_all(b"QUIT\r\n").await;
    }
}
