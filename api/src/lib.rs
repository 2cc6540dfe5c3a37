//! floe's HTTP API: the chat and workflow endpoints, the push channels, the
//! probes, and the web front end's files.
//!
//! # Layout
//!
//! | module       | responsibility                                                   |
//! |--------------|------------------------------------------------------------------|
//! | [`settings`] | the API's command line and environment                           |
//! | [`startup`]  | binding the listener, building the router, serving until shutdown|
//! | [`http`]     | the router: routes, request tracing, body limits, static files   |

pub mod http;
pub mod settings;
pub mod startup;
