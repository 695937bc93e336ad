"""The evaluation (SPEC section 5): every method on the same pairs, the paper's metrics, tables and figures;
`methods/` holds one module per compared method. Imports facepaint.common, .method and .data, never the
editing product: it reuses the method's generation and blend."""
