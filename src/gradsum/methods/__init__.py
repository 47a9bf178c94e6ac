"""Attribution methods and their registry. `available_methods()` lists every name."""
from gradsum.methods.base import ZeroMapWarning
from gradsum.methods.explain import Explanations, explain
from gradsum.methods.registry import available_methods, explainer, method_info, method_table

__all__ = ["available_methods", "explain", "explainer", "Explanations", "method_info", "method_table",
           "ZeroMapWarning"]
