//! One module per subcommand: its arguments and its run function.

pub mod db;
pub mod demo;
pub mod generate;
pub mod live;
pub mod replay;
pub mod shm;
pub mod sim;
