//! The two wire dialects smartpkg speaks over one catalogue of mini programs.

/// Baidu's smart-program API or WeChat's third-party platform ("component") API. Where a rule
/// differs between them (which audit quota a submission draws on, how a push is written),
/// the dialect the call or the event came through says which applies.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    #[default]
    Baidu,
    Wechat,
}

impl Dialect {
    pub const ALL: [Dialect; 2] = [Dialect::Baidu, Dialect::Wechat];

    /// The name stored in the database and shown in the admin API and the console.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dialect::Baidu => "baidu",
            Dialect::Wechat => "wechat",
        }
    }

    pub fn parse(s: &str) -> Option<Dialect> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialect_reads_back_from_its_stored_name() {
        for d in Dialect::ALL {
            assert_eq!(Dialect::parse(d.as_str()), Some(d));
        }
        assert_eq!(Dialect::parse("Baidu"), None);
    }
}
