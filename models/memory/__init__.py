"""Memory adaptation (TS-Memory) of a frozen backbone to one domain: train windows
(``windows``) -> kNN datastore (``datastore``, ``teacher``) -> distilled memory adapter
(``adapter``, ``distill``) -> fusion weight (``fusion``); ``finetune`` is the parametric
alternative scored next to it. ``onboarding`` runs them in order; ``result`` is the folder
it leaves; ``config`` holds every setting with its default."""
