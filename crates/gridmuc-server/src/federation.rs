//! Two private Prosody instances federated over s2s, as a house's server and the grid's
//! server would be in the field.
//!
//! Each instance listens on its own loopback address (any address in 127.0.0.0/8 is on
//! `lo` under Linux), serves a certificate from one shared test CA, requires TLS on s2s
//! and verifies the peer's certificate (`s2s_secure_auth`). The peer's domains are found
//! through static routes in the config (`lua/mod_gridmuc_s2s_routes.lua`), never through
//! DNS or `/etc/hosts`, and each s2s listener takes a free port, so runs do not collide.

use std::net::SocketAddr;

use crate::{PrivateServer, ServerConfig, ServerError, certs, config, free_port};

/// A federated pair: the grid's server hosting the rooms and the houses' server.
pub struct Federation {
    grid: PrivateServer,
    homes: PrivateServer,
}

/// The peer's domains, all routed to its s2s address.
fn routes_to(peer: &ServerConfig, s2s: SocketAddr) -> Vec<(String, SocketAddr)> {
    config::served_names(peer)
        .into_iter()
        .map(|name| (name, s2s))
        .collect()
}

impl Federation {
    /// The grid's server config for a pair: `grid.test` with rooms on `rooms.grid.test`, on 127.0.0.2.
    pub fn grid_config() -> ServerConfig {
        ServerConfig {
            bind: [127, 0, 0, 2].into(),
            ..ServerConfig::default()
        }
    }

    /// The houses' server config for a pair: `homes.test` (its own MUC unused), on 127.0.0.3.
    pub fn homes_config() -> ServerConfig {
        ServerConfig {
            domain: "homes.test".to_owned(),
            muc_domain: "rooms.homes.test".to_owned(),
            bind: [127, 0, 0, 3].into(),
            ..ServerConfig::default()
        }
    }

    /// Starts both servers with one test CA and s2s routes to each other; the two must use
    /// different loopback addresses and domains, as two servers in the field would.
    pub fn start(grid: ServerConfig, homes: ServerConfig) -> Result<Federation, ServerError> {
        for config in [&grid, &homes] {
            if !config.bind.is_loopback() {
                return Err(ServerError::NotLoopback(config.bind));
            }
        }
        if grid.bind == homes.bind {
            return Err(ServerError::Federation(format!(
                "both servers on {}: give each domain its own loopback address",
                grid.bind
            )));
        }
        let grid_names = config::served_names(&grid);
        if let Some(name) = config::served_names(&homes)
            .iter()
            .find(|n| grid_names.contains(n))
        {
            return Err(ServerError::Federation(format!(
                "both servers serve {name}"
            )));
        }
        let ca = certs::test_ca()?;
        let grid_s2s = free_port(grid.bind)?;
        let homes_s2s = free_port(homes.bind)?;
        let grid_side = config::S2s {
            listen: grid_s2s,
            routes: routes_to(&homes, homes_s2s),
        };
        let homes_side = config::S2s {
            listen: homes_s2s,
            routes: routes_to(&grid, grid_s2s),
        };
        let grid = PrivateServer::start_instance(grid, &ca, Some(&grid_side))?;
        let homes = PrivateServer::start_instance(homes, &ca, Some(&homes_side))?;
        tracing::info!(grid = %grid_s2s, homes = %homes_s2s, "federated pair started");
        Ok(Federation { grid, homes })
    }

    /// The server hosting the neighbourhood rooms (and the bot's and operator's accounts).
    pub fn grid(&self) -> &PrivateServer {
        &self.grid
    }

    /// The grid's server, mutably: fault tests restart it and watch s2s recover.
    pub fn grid_mut(&mut self) -> &mut PrivateServer {
        &mut self.grid
    }

    /// The server hosting the house accounts, whose users reach the rooms over s2s.
    pub fn homes(&self) -> &PrivateServer {
        &self.homes
    }

    /// Stops both servers and removes their files, reporting the first error.
    pub fn stop(self) -> Result<(), ServerError> {
        let grid = self.grid.stop();
        let homes = self.homes.stop();
        grid.and(homes)
    }
}
