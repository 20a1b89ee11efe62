//! The routes as the OpenAPI description states them, read back from it:
//! which methods a path answers (a request no route takes is `405` with
//! `Allow` when its path is one the API documents under other methods, `404`
//! otherwise), and which operations need a bearer token (a caller without
//! one is refused before anything else is read). Read from the description
//! the routes build, so neither can drift from it.

use super::problem::ApiError;
use serde_json::Value;

/// The methods the API documents, in the order `Allow` names them.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// One documented path: its segments (`None` for a `{parameter}`) and, per
/// method it answers, whether the operation needs a token.
#[derive(Debug, Clone)]
struct Route {
    segments: Vec<Option<String>>,
    methods: Vec<(&'static str, bool)>,
    allow: String,
}

#[derive(Debug, Default, Clone)]
pub struct Routes(Vec<Route>);

impl Routes {
    /// From the completed description (`/openapi.json`).
    pub fn from_description(doc: &Value) -> Self {
        let global_token = needs_token(doc.get("security"), false);
        let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
            return Routes::default();
        };
        let routes = paths
            .iter()
            .map(|(template, item)| {
                let segments = template
                    .split('/')
                    .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_owned()))
                    .collect();
                let methods: Vec<(&'static str, bool)> = METHODS
                    .iter()
                    .filter_map(|m| {
                        let operation = item.get(m.to_ascii_lowercase())?;
                        Some((*m, needs_token(operation.get("security"), global_token)))
                    })
                    .collect();
                let allow = methods
                    .iter()
                    .map(|(m, _)| *m)
                    .collect::<Vec<_>>()
                    .join(", ");
                Route {
                    segments,
                    methods,
                    allow,
                }
            })
            .collect();
        Routes(routes)
    }

    /// The documented path `path` (as sent, percent-encoded) is. A literal
    /// segment wins over a parameter (`/v1/agreement-texts/current`).
    fn route(&self, path: &str) -> Option<&Route> {
        let wanted: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .filter(|r| {
                r.segments.len() == wanted.len()
                    && r.segments.iter().zip(&wanted).all(|(s, w)| match s {
                        Some(literal) => literal == w,
                        None => !w.is_empty(),
                    })
            })
            .max_by_key(|r| r.segments.iter().filter(|s| s.is_some()).count())
    }

    /// The methods `path` answers, if it is a documented path.
    pub fn allowed(&self, path: &str) -> Option<&str> {
        self.route(path).map(|r| r.allow.as_str())
    }

    /// Whether the operation `method` `path` names needs a bearer token.
    pub fn needs_token(&self, method: &str, path: &str) -> bool {
        self.route(path)
            .and_then(|r| r.methods.iter().find(|(m, _)| *m == method))
            .is_some_and(|(_, token)| *token)
    }

    /// The refusal of a request no route took.
    pub fn refusal(&self, path: &str) -> ApiError {
        match self.allowed(path) {
            Some(allow) => ApiError::MethodNotAllowed {
                allow: allow.to_owned(),
            },
            None => ApiError::RouteNotFound,
        }
    }
}

/// Whether a security requirement list demands a token: absent means the
/// document's default; an empty list, or an empty alternative (`{}`),
/// lets a caller in without one.
fn needs_token(security: Option<&Value>, default: bool) -> bool {
    match security.and_then(Value::as_array) {
        None => default,
        Some(alternatives) => {
            !alternatives.is_empty()
                && alternatives
                    .iter()
                    .all(|a| a.as_object().is_some_and(|o| !o.is_empty()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_description_says_which_methods_a_path_answers_and_which_need_a_token() {
        let routes = Routes::from_description(&json!({
            "security": [{"bearer": []}],
            "paths": {
                "/v1/documents": {"get": {"security": [{}, {"bearer": []}]}},
                "/healthz": {"get": {"security": []}},
                "/v1/applications/{id}": {"get": {}, "post": {}},
                "/v1/agreement-texts/{version}": {"get": {}},
                "/v1/agreement-texts/current": {"get": {"security": []}}
            }
        }));
        assert_eq!(routes.allowed("/v1/documents"), Some("GET"));
        assert_eq!(routes.allowed("/v1/applications/app-1"), Some("GET, POST"));
        assert_eq!(routes.allowed("/v1/applications/"), None);
        assert_eq!(routes.allowed("/v1/nothing"), None);
        assert!(matches!(
            routes.refusal("/v1/nothing"),
            ApiError::RouteNotFound
        ));
        assert!(routes.needs_token("POST", "/v1/applications/app-1"));
        assert!(!routes.needs_token("GET", "/v1/documents"));
        assert!(!routes.needs_token("GET", "/healthz"));
        assert!(!routes.needs_token("DELETE", "/v1/documents"));
        assert!(routes.needs_token("GET", "/v1/agreement-texts/7"));
        assert!(!routes.needs_token("GET", "/v1/agreement-texts/current"));
    }
}
