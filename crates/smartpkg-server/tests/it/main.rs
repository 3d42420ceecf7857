mod admin;
mod errno;
mod helpers;
mod lifecycle;
mod onboarding;
mod push;
mod tp;
mod transport;
