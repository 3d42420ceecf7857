//! The Baidu smart-program API as it appears on the wire, typed.
//!
//! Everything here is shared by the server, the client and the command line: every call's
//! parameters and every answer's data (spec §3–4), the envelope and the gateway error as one
//! [`BaiduResponse`], the errno table ([`Errno`]), the package status ([`WireStatus`]) and the
//! push payloads. No I/O. The source of truth is `spec/baidu-openapi.md`.

mod app;
mod auth;
pub mod endpoint;
mod envelope;
mod errno;
mod package;
pub mod push;
mod template;
pub mod wechat;

pub use app::*;
pub use auth::*;
pub use endpoint::{call, Credential, Endpoint, Method, NoParams};
pub use envelope::*;
pub use errno::Errno;
pub use package::*;
pub use template::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip_and_reject_unknown() {
        for s in WireStatus::ALL {
            assert_eq!(WireStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(WireStatus::from_code(2), None);
        assert_eq!(WireStatus::from_code(7), None);
    }

    #[test]
    fn uploading_row_carries_only_its_five_fields() {
        let row = PackageInfo {
            version: Some("1.2.7".into()),
            commit_time: Some("2018/09/06 15:32:38".into()),
            version_desc: Some("desc".into()),
            upload_status: Some(upload_status::UPLOADING),
            upload_status_desc: Some(upload_status::UPLOADING_DESC.into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&row).expect("serializes"),
            serde_json::json!({"version":"1.2.7","commit_time":"2018/09/06 15:32:38",
                "version_desc":"desc","upload_status":1,"upload_status_desc":"上传中"})
        );
    }
}
