//! Priority rules: `GLOB=high`, `GLOB=low` or `GLOB=N`, matched against a
//! file's path or name; the first rule that matches wins. Used by senders
//! (`ferry send --priority '*.mp4=high'`) and by the appliance for files
//! taken from a share.

use globset::{Glob, GlobMatcher};

use crate::path::SharePath;
use crate::plan::Priority;

/// A rule that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("priority rule {rule:?}: {reason}")]
pub struct RuleError {
    pub rule: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct PriorityRules {
    rules: Vec<(GlobMatcher, Priority)>,
}

impl PriorityRules {
    pub fn parse(specs: &[String]) -> Result<Self, RuleError> {
        let mut rules = Vec::new();
        for spec in specs {
            let err = |reason: String| RuleError {
                rule: spec.clone(),
                reason,
            };
            let (glob, prio) = spec
                .rsplit_once('=')
                .ok_or_else(|| err("expected GLOB=high|low|N, e.g. '*.mp4=high'".into()))?;
            let priority: Priority = prio
                .parse()
                .map_err(|e: crate::plan::PriorityError| err(e.to_string()))?;
            rules.push((glob_matcher(glob).map_err(err)?, priority));
        }
        Ok(PriorityRules { rules })
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The priority of a file: the first matching rule on its path or its
    /// name, else the default.
    pub fn of(&self, path: &SharePath) -> Priority {
        self.find(path).unwrap_or_default()
    }

    /// The priority of the first rule that matches, if one does.
    pub fn find(&self, path: &SharePath) -> Option<Priority> {
        let name = path.file_name().unwrap_or_default();
        self.rules
            .iter()
            .find(|(m, _)| m.is_match(path.as_str()) || m.is_match(name))
            .map(|(_, p)| *p)
    }
}

/// A glob matched against a path or a file name.
pub fn glob_matcher(glob: &str) -> Result<GlobMatcher, String> {
    Glob::new(glob)
        .map(|g| g.compile_matcher())
        .map_err(|e| e.to_string())
}

/// True when `glob` matches the path or its file name.
pub fn glob_matches(matcher: &GlobMatcher, path: &SharePath) -> bool {
    matcher.is_match(path.as_str()) || matcher.is_match(path.file_name().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins() {
        let r = PriorityRules::parse(&[
            "*.mp4=high".into(),
            "shot010/*=low".into(),
            "*.exr=700".into(),
        ])
        .unwrap();
        let p = |s: &str| r.of(&SharePath::parse(s).unwrap());
        assert_eq!(p("review/shot010.mp4"), Priority::HIGH);
        assert_eq!(p("shot010/f.1001.exr"), Priority::LOW);
        assert_eq!(p("shot020/f.1001.exr").get(), 700);
        assert_eq!(p("notes.txt"), Priority::DEFAULT);
        assert!(PriorityRules::parse(&["*.mp4".into()]).is_err());
        assert!(PriorityRules::parse(&["*.mp4=urgent".into()]).is_err());
    }
}
