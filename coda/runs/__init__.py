"""Running long work: the resumable result store (`coda.runs.store`) and the executors that
evaluate tasks inline, on a process pool or on Ray, with interrupts that lose nothing
(`coda.runs.executors`). Shared by the accelerator search (`coda.search`), the serving search
(`coda.serving.search`) and the experiments; it imports none of them."""
