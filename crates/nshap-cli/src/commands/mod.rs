pub mod ablate;
pub mod bench;
pub mod devices;
pub mod inspect;
pub mod report;
pub mod run;
