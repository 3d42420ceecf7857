//! Every Baidu call declared once: its path, the credential it carries, whether it changes
//! anything, its parameters and its data. The server's router and the client are both built
//! from these declarations, so a path or a parameter type cannot differ between them.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Which token a call carries as `access_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A mini program's access token (from `oauth/token`).
    App,
    /// The third party's own token (from `auth/tp/token`).
    Tp,
    /// None: the call proves who is calling some other way (the ticket of `auth/tp/token`).
    None,
}

/// How a careful client sends a call. The real platform answers GET and POST alike on every
/// path; GET (parameters in the query) is for calls that may be repeated after a lost answer,
/// POST (a form body) for those that must not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One call of the Baidu API.
pub trait Endpoint {
    const PATH: &'static str;
    const CREDENTIAL: Credential;
    /// Whether the call creates or changes something, and so draws on the write limits.
    const WRITES: bool;
    const METHOD: Method;
    /// The parameters, as the query string or form carries them.
    type Request: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What the envelope's `data` holds on success.
    type Data: Serialize + DeserializeOwned + Send + 'static;
}

/// The parameters of a call that takes none but its token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NoParams {}

/// `read`: changes nothing (GET). `write`: changes something and must not be repeated
/// blindly (POST). `mint`: creates a fresh code each time, so counts as a write, but a
/// repeat only makes another (GET, as Baidu's SDKs send it).
macro_rules! kind {
    (read) => {
        (false, Method::Get)
    };
    (write) => {
        (true, Method::Post)
    };
    (mint) => {
        (true, Method::Get)
    };
}

macro_rules! endpoints {
    ($( $(#[$doc:meta])* $name:ident: $path:literal, $cred:ident, $kind:ident, $req:ty => $data:ty; )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl Endpoint for $name {
                const PATH: &'static str = $path;
                const CREDENTIAL: Credential = Credential::$cred;
                const WRITES: bool = kind!($kind).0;
                const METHOD: Method = kind!($kind).1;
                type Request = $req;
                type Data = $data;
            }
        )*

        /// Every declared path, for tests and route tables.
        pub const ALL_PATHS: &[&str] = &[$($path),*];
    };
}

/// The declarations, one type per call. `call::Upload::PATH` is the upload's path, and so on.
pub mod call {
    use super::{Credential, Endpoint, Method, NoParams};
    use crate::*;

    endpoints! {
        /// Builds a package from a template and `ext_json` (spec §3).
        Upload: "/rest/2.0/smartapp/package/upload", App, write, UploadRequest => NoData;
        SubmitAudit: "/rest/2.0/smartapp/package/submitaudit", App, write, SubmitAuditRequest => NoData;
        Release: "/rest/2.0/smartapp/package/release", App, write, PackageIdRequest => NoData;
        Rollback: "/rest/2.0/smartapp/package/rollback", App, write, PackageIdRequest => NoData;
        Withdraw: "/rest/2.0/smartapp/package/withdraw", App, write, PackageIdRequest => NoData;
        GetPackages: "/rest/2.0/smartapp/package/get", App, read, NoParams => Vec<PackageInfo>;
        GetDetail: "/rest/2.0/smartapp/package/getdetail", App, read, GetDetailRequest => PackageInfo;
        AuditQuota: "/rest/2.0/smartapp/package/auditquota", App, read, NoParams => crate::AuditQuota;
        GetTrial: "/rest/2.0/smartapp/package/gettrial", App, read, NoParams => PackageInfo;
        /// smartpkg's extension: a staged release.
        GrayRelease: "/rest/2.0/smartapp/package/grayrelease", App, write, GrayReleaseRequest => NoData;
        /// smartpkg's extension: every device back to the online version.
        RevertGrayRelease: "/rest/2.0/smartapp/package/revertgrayrelease", App, write, PackageIdRequest => NoData;
        /// smartpkg's extension: a halted plan runs again from the step it halted at.
        ResumeGrayRelease: "/rest/2.0/smartapp/package/resumegrayrelease", App, write, PackageIdRequest => NoData;
        /// smartpkg's extension: back to a chosen former online version.
        RollbackTo: "/rest/2.0/smartapp/package/rollbackto", App, write, RollbackToRequest => NoData;
        /// smartpkg's extension: the versions `rollbackto` may choose.
        GetHistory: "/rest/2.0/smartapp/package/gethistory", App, read, NoParams => Vec<HistoryVersion>;
        Pause: "/rest/2.0/smartapp/app/pause", App, write, NoParams => NoData;
        Resume: "/rest/2.0/smartapp/app/resume", App, write, NoParams => NoData;
        ModifyDomain: "/rest/2.0/smartapp/app/modifydomain", App, write, ModifyDomainRequest => AppDomains;
        ModifyWebviewDomain: "/rest/2.0/smartapp/app/modifywebviewdomain", App, write, ModifyWebviewDomainRequest => String;
        GetSupportVersion: "/rest/2.0/smartapp/app/getsupportversion", App, read, NoParams => SupportVersions;
        /// smartpkg's extension, as WeChat's `setweappsupportversion`.
        SetSupportVersion: "/rest/2.0/smartapp/app/setsupportversion", App, write, SetSupportVersionRequest => NoData;
        TpModifyDomain: "/rest/2.0/smartapp/tp/modifydomain", Tp, write, ModifyDomainRequest => TpDomains;
        TpModifyWebviewDomain: "/rest/2.0/smartapp/tp/modifywebviewdomain", Tp, write, ModifyWebviewDomainRequest => Vec<String>;
        TpToken: "/public/2.0/smartapp/auth/tp/token", None, read, TpTokenRequest => crate::TpToken;
        CreatePreAuthCode: "/rest/2.0/smartapp/tp/createpreauthcode", Tp, mint, NoParams => PreAuthCode;
        /// Answers [`AppTokens`] unwrapped, or [`OAuthError`]: not the envelope.
        OAuthToken: "/rest/2.0/oauth/token", Tp, read, OAuthGrant => AppTokens;
        AppInfo: "/rest/2.0/smartapp/app/info", App, read, NoParams => crate::AppInfo;
        /// Answers a PNG image, or the envelope on error.
        QrCode: "/rest/2.0/smartapp/app/qrcode", App, read, QrCodeRequest => NoData;
        RetrieveAuthorizationCode: "/rest/2.0/smartapp/auth/retrieve/authorizationcode", Tp, write, RetrieveCodeRequest => AuthorizationCode;
        GetTemplateDraftList: "/rest/2.0/smartapp/template/gettemplatedraftlist", Tp, read, PageRequest => DraftList;
        AddToTemplate: "/rest/2.0/smartapp/template/addtotemplate", Tp, write, AddToTemplateRequest => AddedTemplate;
        GetTemplateList: "/rest/2.0/smartapp/template/gettemplatelist", Tp, read, PageRequest => TemplateList;
        DelTemplate: "/rest/2.0/smartapp/template/deltemplate", Tp, write, DelTemplateRequest => DeletedTemplate;
    }
}

#[cfg(test)]
mod tests {
    use super::call::ALL_PATHS;

    #[test]
    fn every_call_has_its_own_path_under_the_apis_prefixes() {
        let mut seen = std::collections::HashSet::new();
        for p in ALL_PATHS {
            assert!(seen.insert(*p), "{p} declared twice");
            assert!(
                p.starts_with("/rest/2.0/") || p.starts_with("/public/2.0/"),
                "{p} is outside the API's prefixes"
            );
        }
    }
}
