"""Alarms: the catalogue of predefined templates and their evaluators (`catalogue`,
`evaluators`), the engine that turns what an evaluator sees into alarms (`engine`), the sweeps
that run evaluators (`evaluation`) and the notifications (`notify`)."""
