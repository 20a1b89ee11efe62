//! What to say of a request no route takes: `405` with `Allow` when its
//! path is one the API documents under other methods, `404` otherwise. The
//! table is read from the same OpenAPI description the routes build, so it
//! cannot drift from them.

use super::problem::ApiError;
use utoipa::openapi::OpenApi;

/// Each documented path, as segments (`None` for a `{parameter}`), with the
/// methods it answers.
#[derive(Debug, Default, Clone)]
pub struct Routes(Vec<(Vec<Option<String>>, String)>);

impl Routes {
    pub fn from_spec(spec: &OpenApi) -> Self {
        let routes = spec
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let segments = template
                    .split('/')
                    .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_owned()))
                    .collect();
                let methods: Vec<&str> = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, declared)| declared.then_some(m))
                .collect();
                (segments, methods.join(", "))
            })
            .collect();
        Routes(routes)
    }

    /// The methods `path` (as sent, percent-encoded) answers, if it is a
    /// documented path.
    pub fn allowed(&self, path: &str) -> Option<&str> {
        let wanted: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .find(|(segments, _)| {
                segments.len() == wanted.len()
                    && segments.iter().zip(&wanted).all(|(s, w)| match s {
                        Some(literal) => literal == w,
                        None => !w.is_empty(),
                    })
            })
            .map(|(_, allow)| allow.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_path_under_another_method_names_its_methods() {
        let routes = Routes(vec![
            (
                vec![Some("".into()), Some("v1".into()), Some("documents".into())],
                "GET".into(),
            ),
            (
                vec![
                    Some("".into()),
                    Some("v1".into()),
                    Some("applications".into()),
                    None,
                ],
                "GET, POST".into(),
            ),
        ]);
        assert_eq!(routes.allowed("/v1/documents"), Some("GET"));
        assert_eq!(routes.allowed("/v1/applications/app-1"), Some("GET, POST"));
        assert_eq!(routes.allowed("/v1/applications/"), None);
        assert_eq!(routes.allowed("/v1/nothing"), None);
        assert!(matches!(
            routes.refusal("/v1/nothing"),
            ApiError::RouteNotFound
        ));
    }
}
