//! The polctl policy language: lexer, parser, schema and type checking, the typed IR, the
//! formatter and the one `Diagnostic` type.
//!
//! This crate does no IO: callers hand it a [`SourceSet`] and get back an IR and diagnostics.

pub mod ast;
pub mod check;
pub mod decimal;
pub mod diagnostic;
pub mod display;
pub mod eval;
pub mod format;
pub mod incomplete;
pub mod ir;
pub mod lexer;
pub mod parser;
pub mod project;
pub mod source;
pub mod suggest;

pub use check::{compile, compile_against, compile_condition, Compilation, Stats};
pub use diagnostic::{Diagnostic, DiagnosticKind, Severity};
pub use source::{FileId, SourceFile, SourceSet, Span};
