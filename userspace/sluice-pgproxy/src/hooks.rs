//! Where policy, masking and recording plug into a session.
//!
//! Every statement — simple-query text, or Parse text with the Bind
//! parameters that run it — passes [`Policy::decide`] before it reaches the
//! database. The test policy here, [`PatternPolicy`], refuses statements
//! matching configured regular expressions; the AST policy of a later
//! milestone implements the same trait.
use bytes::Bytes;
use regex::RegexSet;

/// A statement about to reach the database.
#[derive(Debug, Clone)]
pub struct Statement<'a> {
    /// SQL text (a simple query may hold several statements).
    pub text: &'a str,
    /// Bound parameter values (extended protocol), None for NULL.
    pub params: &'a [Option<Bytes>],
    /// How it arrived: "simple" or "extended".
    pub protocol: &'static str,
}

/// What the policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Allow,
    /// Refuse it; the client gets SQLSTATE 42501 with this reason.
    Deny {
        /// Which rule refused it.
        rule: String,
    },
}

/// Decides statements. Must be fast and synchronous: it runs inline on the
/// session's task for every statement.
pub trait Policy: Send + Sync {
    /// Decide one statement.
    fn decide(&self, statement: &Statement<'_>) -> Decision;
}

/// Refuses statements whose text matches any configured pattern.
pub struct PatternPolicy {
    set: RegexSet,
    patterns: Vec<String>,
}

impl PatternPolicy {
    /// Compile `patterns` (regular expressions); an invalid one is an error
    /// naming it.
    pub fn new(patterns: &[String]) -> Result<PatternPolicy, regex::Error> {
        Ok(PatternPolicy {
            set: RegexSet::new(patterns)?,
            patterns: patterns.to_vec(),
        })
    }
}

impl Policy for PatternPolicy {
    fn decide(&self, statement: &Statement<'_>) -> Decision {
        match self.set.matches(statement.text).iter().next() {
            Some(i) => Decision::Deny {
                rule: format!("deny_patterns[{i}] = {:?}", self.patterns[i]),
            },
            None => Decision::Allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per case: statement text → denied?
    #[test]
    fn pattern_policy_table() {
        let p = PatternPolicy::new(&[
            "(?i)\\bdrop\\s+table\\b".into(),
            "(?i)^\\s*delete\\s+from\\s+\\w+\\s*;?\\s*$".into(),
        ])
        .unwrap();
        let cases = [
            ("select 1", false),
            ("DROP TABLE cards", true),
            ("select 'x'; drop   table t", true),
            ("delete from cards", true),
            ("delete from cards where id = 1", false),
            ("select 'dropped table'", false),
        ];
        for (text, denied) in cases {
            let d = p.decide(&Statement {
                text,
                params: &[],
                protocol: "simple",
            });
            assert_eq!(matches!(d, Decision::Deny { .. }), denied, "{text}");
        }
    }

    #[test]
    fn invalid_pattern_is_an_error() {
        assert!(PatternPolicy::new(&["(".into()]).is_err());
    }
}
