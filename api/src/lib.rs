//! floe's HTTP API: the chat and workflow endpoints, the push channels, the
//! probes, and the web front end's files.
//!
//! # Layout
//!
//! | module       | responsibility                                                   |
//! |--------------|------------------------------------------------------------------|
//! | [`settings`] | the API's command line and environment                           |
//! | [`startup`]  | binding the listener, building the router, serving until shutdown|
//! | [`http`]     | the router: routes, errors, auth, sessions, the chat, its        |
//! |              | WebSocket, SSE, OpenAPI, static files                            |
//! | [`push`]     | the push hub: one LISTEN connection fanned out to subscribers    |

pub mod http;
pub mod push;
pub mod settings;
pub mod startup;
