"""The names of ``inputtypes`` (typed inputs, a run's parameters) and ``rendering`` (rendering a
script, masking secrets) under their former module, for code written against it."""
from pipeline_engine.inputtypes import (
    INPUT_TYPES,
    INT_DIGITS,
    MASK,
    InputSpec,
    missing,
    parse_schema,
    resolve,
    schema_to_dict,
    shown,
)
from pipeline_engine.rendering import (
    ENV_PREFIX,
    Rendered,
    Slot,
    Template,
    compile_script,
    mask,
    render,
    render_script,
)

__all__ = ["ENV_PREFIX", "INPUT_TYPES", "INT_DIGITS", "MASK", "InputSpec", "Rendered", "Slot", "Template",
           "compile_script", "mask", "missing", "parse_schema", "render", "render_script", "resolve",
           "schema_to_dict", "shown"]
