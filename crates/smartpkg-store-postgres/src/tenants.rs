use smartpkg_store::{App, Result, Tp};
use sqlx::postgres::PgRow;

use crate::Cols;

pub(crate) const TP_COLS: &str = smartpkg_store::tp_columns!();

pub(crate) fn tp_row(r: &PgRow) -> Result<Tp> {
    Tp::from_row(&Cols(r))
}

pub(crate) const APP_COLS: &str = smartpkg_store::app_columns!();

pub(crate) fn app_row(r: &PgRow) -> Result<App> {
    App::from_row(&Cols(r))
}
