//! The platform's ids, one type each: a third party's id where a mini program's is expected
//! does not compile (`revoke(app_id, tp_id)` with the two swapped). On the wire and in the
//! database they are plain integers (`serde(transparent)`); code that speaks the wire or SQL
//! unwraps them with `.0` or `get()` at that edge, and nowhere else.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What every id is: an integer with a name. For the code at the edges (rows, parameters)
/// that reads or writes any of them.
pub trait Id: Copy {
    fn from_raw(raw: i64) -> Self;
    fn raw(self) -> i64;
}

macro_rules! id {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The integer the wire and the database carry.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl Id for $name {
            fn from_raw(raw: i64) -> Self {
                $name(raw)
            }
            fn raw(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

id! {
    /// A third party (a TP).
    TpId;
    /// A mini program.
    AppId;
    /// A code package of a mini program.
    PackageId;
    /// A template of a third party's library.
    TemplateId;
    /// An account of the web console.
    AccountId;
    /// A host app of the runtime channel.
    HostId;
}

/// A mini program's original id in the WeChat dialect (`gh_` and 12 hex digits), which its
/// audit-result pushes are addressed to and `api_get_authorizer_info` shows as `user_name`:
/// derived from its wx appid, so it needs no column and never changes.
pub fn wechat_original_id(wx_appid: &str) -> String {
    let hex: String = wx_appid
        .chars()
        .skip(2)
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    format!("gh_{hex:0<12}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_a_plain_number_on_the_wire() {
        assert_eq!(serde_json::to_string(&AppId(42)).expect("json"), "42");
        assert_eq!(serde_json::from_str::<TpId>("7").expect("json"), TpId(7));
        assert_eq!(PackageId(3).to_string(), "3");
    }

    #[test]
    fn a_wechat_original_id_is_gh_and_twelve_hex_digits_of_the_appid() {
        assert_eq!(
            super::wechat_original_id("wx0123456789abcdef"),
            "gh_0123456789ab"
        );
        // Short or odd input still gives the full shape.
        assert_eq!(super::wechat_original_id("wx12"), "gh_120000000000");
    }
}
