"""What people read and look at: plots (``plots``), tables as text (``tables``), the onboarding
report (``onboarding``), the zero-shot report (``zero_shot``) and the demo's printout (``demo``)."""
