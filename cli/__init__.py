"""The command line: `vqa` (`python starter.py`) and `vqa-worker` (`python worker.py`).

It sits above activities and workflows: it assembles the worker (cli/worker.py) and
starts, watches, inspects and stops streams (cli/main.py and the modules it names).
"""

from vqa.settings import limit_blas_threads

# Before numpy is first imported: windows already run in parallel, BLAS threads on top
# only contend for the cores.
limit_blas_threads()
