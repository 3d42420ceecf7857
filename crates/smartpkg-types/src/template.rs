//! The template library (spec §4): drafts, templates, and their calls.

use serde::{Deserialize, Serialize};

/// `page` (from 1) and `page_size` (1 to 100) of the list calls; 1 and 10 when left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PageRequest {
    pub page: i64,
    pub page_size: i64,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            page: 1,
            page_size: 10,
        }
    }
}

/// One draft uploaded by the third party's developer tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    pub draft_id: i64,
    pub user_version: String,
    pub user_desc: String,
    /// Unix seconds.
    pub create_time: i64,
    pub web_status: bool,
}

/// `gettemplatedraftlist`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftList {
    pub count: i64,
    pub list: Vec<Draft>,
}

/// One template of the third party's library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInfo {
    pub template_id: i64,
    pub user_version: String,
    pub user_desc: String,
    /// Unix seconds.
    pub create_time: i64,
    pub web_status: bool,
}

/// `gettemplatelist`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateList {
    pub count: i64,
    pub list: Vec<TemplateInfo>,
}

/// `addtotemplate`'s parameters: at most 50 templates (errno 2003), `user_desc` at most 30
/// characters (errno 40016).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddToTemplateRequest {
    pub draft_id: i64,
    pub user_desc: String,
}

/// `addtotemplate`'s data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedTemplate {
    pub template_id: i64,
}

/// `deltemplate`'s parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelTemplateRequest {
    pub template_id: i64,
}

/// `deltemplate`'s data: `{"result": 1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedTemplate {
    pub result: i64,
}
