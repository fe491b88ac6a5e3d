//! Engine limits: a recipe is code from a file, so it gets bounds that
//! stop runaway loops and memory use with a clear error instead of a hung
//! or killed controller. Generous enough for real recipes: job output (up
//! to 4 MiB per stream) must fit in a string.

use rhai::Engine;

/// Script operations before "too many operations" (a busy loop of about a
/// minute; waiting for jobs costs no operations).
pub const MAX_OPERATIONS: u64 = 500_000_000;
/// Nesting of function calls.
pub const MAX_CALL_LEVELS: usize = 64;
/// Largest string: room for a job's full stdout.
pub const MAX_STRING_SIZE: usize = 16 * 1024 * 1024;
pub const MAX_ARRAY_SIZE: usize = 1_000_000;
pub const MAX_MAP_SIZE: usize = 100_000;
/// Expression nesting depth (global, inside functions).
pub const MAX_EXPR_DEPTHS: (usize, usize) = (64, 64);

/// Applies every limit.
pub fn apply(engine: &mut Engine) {
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_max_expr_depths(MAX_EXPR_DEPTHS.0, MAX_EXPR_DEPTHS.1);
}
