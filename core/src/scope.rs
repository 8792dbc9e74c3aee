//! Sealing scopes and the OAEP label each one binds a ciphertext to.

use crate::error::quoted;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Annotation that makes a SealedSecret decryptable under any name in its namespace.
pub const NAMESPACE_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/namespace-wide";
/// Annotation that makes a SealedSecret decryptable under any name in any namespace.
pub const CLUSTER_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/cluster-wide";

/// How tightly a ciphertext is bound to the object that carries it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Bound to namespace and name (the default).
    #[default]
    Strict,
    /// Bound to the namespace only.
    NamespaceWide,
    /// Not bound: any name, any namespace.
    ClusterWide,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Strict, Scope::NamespaceWide, Scope::ClusterWide];

    /// The scope the annotations declare, as the controller reads them: cluster-wide wins,
    /// and only the exact string `"true"` counts.
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Scope {
        let is_true = |key: &str| annotations.and_then(|a| a.get(key)).is_some_and(|v| v == "true");
        if is_true(CLUSTER_WIDE_ANNOTATION) {
            Scope::ClusterWide
        } else if is_true(NAMESPACE_WIDE_ANNOTATION) {
            Scope::NamespaceWide
        } else {
            Scope::Strict
        }
    }

    /// Rewrite `annotations` so that they declare exactly this scope.
    pub fn apply_to(self, annotations: &mut BTreeMap<String, String>) {
        annotations.remove(NAMESPACE_WIDE_ANNOTATION);
        annotations.remove(CLUSTER_WIDE_ANNOTATION);
        match self {
            Scope::Strict => {}
            Scope::NamespaceWide => {
                annotations.insert(NAMESPACE_WIDE_ANNOTATION.to_owned(), "true".to_owned());
            }
            Scope::ClusterWide => {
                annotations.insert(CLUSTER_WIDE_ANNOTATION.to_owned(), "true".to_owned());
            }
        }
    }

    /// The OAEP label: `"<namespace>/<name>"`, `"<namespace>"` or empty.
    pub fn label(self, namespace: &str, name: &str) -> Vec<u8> {
        match self {
            Scope::Strict => format!("{namespace}/{name}").into_bytes(),
            Scope::NamespaceWide => namespace.as_bytes().to_vec(),
            Scope::ClusterWide => Vec::new(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::NamespaceWide => "namespace-wide",
            Scope::ClusterWide => "cluster-wide",
        }
    }

    /// Whether the label depends on the namespace.
    pub fn needs_namespace(self) -> bool {
        self != Scope::ClusterWide
    }

    /// Whether the label depends on the name.
    pub fn needs_name(self) -> bool {
        self == Scope::Strict
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is none of `strict`, `namespace-wide`, `cluster-wide`.
#[derive(Debug, thiserror::Error)]
#[error("unknown scope {}: expected strict, namespace-wide or cluster-wide", quoted(.0))]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Scope::Strict),
            "namespace-wide" => Ok(Scope::NamespaceWide),
            "cluster-wide" => Ok(Scope::ClusterWide),
            other => Err(UnknownScope(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn labels_match_upstream() {
        assert_eq!(Scope::Strict.label("ns", "n"), b"ns/n");
        assert_eq!(Scope::NamespaceWide.label("ns", "n"), b"ns");
        assert_eq!(Scope::ClusterWide.label("ns", "n"), b"");
    }

    #[test]
    fn cluster_wide_beats_namespace_wide() {
        let a = annotations(&[(CLUSTER_WIDE_ANNOTATION, "true"), (NAMESPACE_WIDE_ANNOTATION, "true")]);
        assert_eq!(Scope::from_annotations(Some(&a)), Scope::ClusterWide);
    }

    #[test]
    fn only_exact_true_counts() {
        for value in ["True", "TRUE", "yes", "1", " true", ""] {
            let a = annotations(&[(CLUSTER_WIDE_ANNOTATION, value), (NAMESPACE_WIDE_ANNOTATION, value)]);
            assert_eq!(Scope::from_annotations(Some(&a)), Scope::Strict, "value {value:?}");
        }
        assert_eq!(Scope::from_annotations(None), Scope::Strict);
    }

    #[test]
    fn apply_to_replaces_previous_scope() {
        let mut a = annotations(&[(CLUSTER_WIDE_ANNOTATION, "true"), ("other", "x")]);
        Scope::NamespaceWide.apply_to(&mut a);
        assert_eq!(Scope::from_annotations(Some(&a)), Scope::NamespaceWide);
        assert!(!a.contains_key(CLUSTER_WIDE_ANNOTATION));
        Scope::Strict.apply_to(&mut a);
        assert_eq!(a, annotations(&[("other", "x")]));
    }
}
