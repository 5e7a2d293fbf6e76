//! Priority rules: `GLOB=high`, `GLOB=low` or `GLOB=N`, matched against a
//! file's path; the first rule that matches wins.

use ferry_proto::{Priority, SharePath};
use globset::{Glob, GlobMatcher};

use crate::error::ClientError;

#[derive(Debug, Clone, Default)]
pub struct PriorityRules {
    rules: Vec<(GlobMatcher, Priority)>,
}

impl PriorityRules {
    pub fn parse(specs: &[String]) -> Result<Self, ClientError> {
        let mut rules = Vec::new();
        for spec in specs {
            let (glob, prio) = spec.rsplit_once('=').ok_or_else(|| {
                ClientError::Invalid(format!(
                    "--priority {spec:?}: expected GLOB=high|low|N, e.g. '*.mp4=high'"
                ))
            })?;
            let priority: Priority = prio
                .parse()
                .map_err(|e| ClientError::Invalid(format!("--priority {spec:?}: {e}")))?;
            let matcher = Glob::new(glob)
                .map_err(|e| ClientError::Invalid(format!("--priority {spec:?}: {e}")))?
                .compile_matcher();
            rules.push((matcher, priority));
        }
        Ok(PriorityRules { rules })
    }

    /// The priority of a file: the first matching rule on its path or its
    /// name, else the default.
    pub fn of(&self, path: &SharePath) -> Priority {
        let name = path.file_name().unwrap_or_default();
        self.rules
            .iter()
            .find(|(m, _)| m.is_match(path.as_str()) || m.is_match(name))
            .map(|(_, p)| *p)
            .unwrap_or_default()
    }
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
