//! The two answer shapes of the platform (spec §2): the business envelope and the gateway
//! error, and [`BaiduResponse`], which is either.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::Errno;

/// The business envelope: `{"errno": 0, "msg": "success", "data": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub errno: Errno,
    pub msg: String,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

/// The gateway's error shape, checked by every SDK before the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayError {
    pub error_code: i64,
    pub error_msg: String,
}

impl GatewayError {
    pub const INVALID_PARAMETER: i64 = 100;
    pub const TOKEN_INVALID: i64 = 110;
    pub const TOKEN_EXPIRED: i64 = 111;
    pub const UNSUPPORTED_METHOD: i64 = 3;

    /// What the gateway answers for a path under `/rest/2.0/` it does not serve (spec §8).
    pub fn unsupported_method() -> Self {
        GatewayError {
            error_code: Self::UNSUPPORTED_METHOD,
            error_msg: "Unsupported openapi method".into(),
        }
    }

    pub fn token_invalid() -> Self {
        GatewayError {
            error_code: Self::TOKEN_INVALID,
            error_msg: "Access token invalid or no longer valid".into(),
        }
    }

    pub fn token_expired() -> Self {
        GatewayError {
            error_code: Self::TOKEN_EXPIRED,
            error_msg: "Access token expired".into(),
        }
    }
}

/// A business refusal: a non-zero errno and the platform's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub errno: Errno,
    pub msg: String,
}

/// Any answer of a Baidu API call whose success carries `T`.
///
/// Decoding looks at the shape first, as the SDKs do: an object with `error_code` is the
/// gateway's; otherwise the envelope, where errno 0 is success (a missing `data` decodes `T`
/// from `null`, so use [`NoData`] for calls that answer nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum BaiduResponse<T> {
    Success(T),
    Refused(ApiError),
    Gateway(GatewayError),
}

impl<T> BaiduResponse<T> {
    pub fn into_result(self) -> Result<T, Refusal> {
        match self {
            BaiduResponse::Success(t) => Ok(t),
            BaiduResponse::Refused(e) => Err(Refusal::Api(e)),
            BaiduResponse::Gateway(g) => Err(Refusal::Gateway(g)),
        }
    }
}

/// Why a call did not succeed, as the platform said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Api(ApiError),
    Gateway(GatewayError),
}

impl<T: Serialize> Serialize for BaiduResponse<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BaiduResponse::Success(data) => Envelope {
                errno: Errno::Success,
                msg: "success".into(),
                data: Some(data),
            }
            .serialize(s),
            BaiduResponse::Refused(e) => Envelope::<()> {
                errno: e.errno,
                msg: e.msg.clone(),
                data: None,
            }
            .serialize(s),
            BaiduResponse::Gateway(g) => g.serialize(s),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for BaiduResponse<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = Value::deserialize(d)?;
        let Some(obj) = v.as_object_mut() else {
            return Err(D::Error::custom("a Baidu answer is a JSON object"));
        };
        if obj.contains_key("error_code") {
            return serde_json::from_value(v)
                .map(BaiduResponse::Gateway)
                .map_err(D::Error::custom);
        }
        let errno = match obj.get("errno") {
            Some(e) => Errno::deserialize(e).map_err(D::Error::custom)?,
            None => return Err(D::Error::missing_field("errno")),
        };
        let msg = match obj.get("msg") {
            Some(Value::String(m)) => m.clone(),
            _ => String::new(),
        };
        if errno != Errno::Success {
            return Ok(BaiduResponse::Refused(ApiError { errno, msg }));
        }
        let data = obj.remove("data").unwrap_or(Value::Null);
        T::deserialize(data)
            .map(BaiduResponse::Success)
            .map_err(|e| D::Error::custom(format!("data: {e}")))
    }
}

/// The data of a call that answers nothing: accepts an absent `data`, `{}`, `""` or `[]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoData;

impl Serialize for NoData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_map(Some(0))
            .and_then(serde::ser::SerializeMap::end)
    }
}

impl<'de> Deserialize<'de> for NoData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| NoData)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_without_data_omits_the_field() {
        let e: Envelope<()> = Envelope {
            errno: Errno::Success,
            msg: "success".into(),
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&e).expect("serializes"),
            r#"{"errno":0,"msg":"success"}"#
        );
    }

    #[test]
    fn a_gateway_error_is_told_from_an_envelope_by_its_shape() {
        let g: BaiduResponse<NoData> = serde_json::from_str(
            r#"{"error_code":110,"error_msg":"Access token invalid or no longer valid"}"#,
        )
        .expect("decodes");
        assert_eq!(g, BaiduResponse::Gateway(GatewayError::token_invalid()));
        let r: BaiduResponse<NoData> =
            serde_json::from_str(r#"{"errno":69005,"msg":"包不存在"}"#).expect("decodes");
        assert_eq!(
            r,
            BaiduResponse::Refused(ApiError {
                errno: Errno::PackageNotFound,
                msg: "包不存在".into()
            })
        );
    }

    #[test]
    fn an_empty_success_accepts_every_form_of_nothing() {
        for body in [
            r#"{"errno":0,"msg":"success"}"#,
            r#"{"errno":0,"msg":"success","data":{}}"#,
            r#"{"errno":0,"msg":"success","data":""}"#,
            r#"{"errno":0,"msg":"success","data":null}"#,
        ] {
            let r: BaiduResponse<NoData> = serde_json::from_str(body).expect(body);
            assert_eq!(r, BaiduResponse::Success(NoData));
        }
    }

    #[test]
    fn a_mistyped_field_in_data_fails_the_decode() {
        let r = serde_json::from_str::<BaiduResponse<crate::AuditQuota>>(
            r#"{"errno":0,"msg":"success","data":{"quota_type":"2","quota_times":10,"remain_times":9}}"#,
        );
        assert!(
            r.is_err(),
            "a string where a number belongs must not decode"
        );
    }
}
