//! Notifications to people outside GitHub. A failed notification is a warning, never a
//! changed result, and never silent.

pub mod slack;
