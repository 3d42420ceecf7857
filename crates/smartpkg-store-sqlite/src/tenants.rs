use super::*;

pub(crate) const TP_COLS: &str = smartpkg_store::tp_columns!();

pub(crate) fn tp_row(r: &Row<'_>) -> rusqlite::Result<Tp> {
    decoded(Tp::from_row(&Cols::new(r)))
}

pub(crate) const APP_COLS: &str = smartpkg_store::app_columns!();

pub(crate) fn app_row(r: &Row<'_>) -> rusqlite::Result<App> {
    decoded(App::from_row(&Cols::new(r)))
}
