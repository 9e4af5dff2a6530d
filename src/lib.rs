//! tj-deploy: deploys a Node.js app (PM2 cluster, PostgreSQL with migrations) to Linux servers
//! over SSH. Data flows one way: inputs → [`config`] → plan → steps ([`deploy`]) →
//! [`remote`] transport → host, and every run ends in one [`report::Summary`].

pub mod actions;
pub mod availability;
pub mod backup;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod deps;
pub mod ecosystem;
pub mod error;
pub mod github;
pub mod health;
pub mod journal;
pub mod lock;
pub mod notify;
pub mod package;
pub mod remote;
pub mod report;
pub mod rollback;
pub mod signals;
pub mod state;
pub mod steps;
pub mod ui;
