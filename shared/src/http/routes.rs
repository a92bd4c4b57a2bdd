//! The one list of routes per endpoint group: it builds the group's router, and the same list
//! is what template.yaml must declare and what the local server serves, so a route can't be
//! served without being declared (or the other way round).

use std::collections::BTreeMap;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodRouter, delete, get, post, put};

use super::AppState;

/// One route: its method, its path in axum's syntax (`/users/{user}`) and its handler.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// The handler function's path (`eider_users::list_users`): the API document's
    /// operation id and group come from it.
    pub handler_name: &'static str,
    handler: MethodRouter<AppState>,
}

/// The routes of one endpoint group.
#[derive(Default)]
pub struct Routes(Vec<Route>);

impl Routes {
    pub fn new() -> Self {
        Routes(Vec::new())
    }

    fn add<H>(
        mut self,
        method: &'static str,
        path: &'static str,
        h: MethodRouter<AppState>,
    ) -> Self {
        self.0.push(Route {
            method,
            path,
            handler_name: std::any::type_name::<H>(),
            handler: h,
        });
        self
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add::<H>("GET", path, get(h))
    }
    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add::<H>("POST", path, post(h))
    }
    pub fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add::<H>("PUT", path, put(h))
    }
    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add::<H>("DELETE", path, delete(h))
    }

    /// Every `(method, path)` of the group, in the order declared.
    pub fn list(&self) -> Vec<(&'static str, &'static str)> {
        self.0.iter().map(|r| (r.method, r.path)).collect()
    }

    /// Every route's method, path and handler name, in the order declared.
    pub fn named(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        self.0
            .iter()
            .map(|r| (r.method, r.path, r.handler_name))
            .collect()
    }

    /// The group's router: full paths and no fallback (the finishing layer adds it). Panics on
    /// a method declared twice for one path.
    pub fn router(self) -> Router<AppState> {
        let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
        for route in self.0 {
            let merged = match by_path.remove(route.path) {
                Some(existing) => existing.merge(route.handler),
                None => route.handler,
            };
            by_path.insert(route.path, merged);
        }
        by_path
            .into_iter()
            .fold(Router::new(), |router, (path, handler)| {
                router.route(path, handler)
            })
    }

    /// Both groups' routes in one list.
    pub fn merge(mut self, other: Routes) -> Self {
        self.0.extend(other.0);
        self
    }
}
