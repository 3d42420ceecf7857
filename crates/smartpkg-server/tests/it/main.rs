mod admin;
mod errno;
mod helpers;
mod lifecycle;
mod transport;
