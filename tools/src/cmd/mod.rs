//! One module per subcommand: its arguments and its run function.

pub mod db;
pub mod demo;
pub mod export;
pub mod generate;
pub mod live;
pub mod mirror;
pub mod persist;
pub mod replay;
pub mod serve;
pub mod shm;
pub mod sim;
