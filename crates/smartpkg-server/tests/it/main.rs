mod admin;
mod errno;
mod helpers;
mod lifecycle;
mod push;
mod tp;
mod transport;
