"""projected_grpo: can we stop a code model learning reward hacks by removing a hack direction from its gradient?

Set BEARTYPE=1 to type-check every function of this package at call time, jaxtyping shapes included
(`Float[Tensor, "n d"]` dims must agree across the arguments and return value of one call).
"""

import os

if os.environ.get("BEARTYPE", "0") not in ("", "0"):
    # The hook decorates each submodule imported after this line with jaxtyped(beartype), so it
    # must run before any `from projected_grpo import ...` of a submodule.
    from jaxtyping import install_import_hook

    install_import_hook("projected_grpo", "beartype.beartype")
