//! tj-deploy: deploys a Node.js app (PM2 cluster, PostgreSQL with migrations) to Linux servers
//! over SSH. Data flows one way: inputs → [`config`] → [`plan`] → steps ([`pipeline`]) →
//! [`remote`] transport → host, and every run ends in one [`report::Summary`].

pub mod action_args;
pub mod actions;
pub mod app;
pub mod availability;
pub mod backup;
pub mod cli;
pub mod config;
pub mod dbrestore;
pub mod deps;
pub mod dotenv;
pub mod drain;
pub mod ecosystem;
pub mod error;
pub mod github;
pub mod health;
pub mod health_host;
pub mod history;
pub mod init;
pub mod journal;
pub mod lock;
pub mod migrations;
pub mod notify;
pub mod package;
pub mod pgconn;
pub mod pipeline;
pub mod plan;
pub mod remote;
pub mod report;
pub mod secret_env;
pub mod signals;
pub mod state;
pub mod steps;
pub mod suggest;
pub mod ui;
pub mod watch;
