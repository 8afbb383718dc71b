"""Imported first by every command module (and `facemask`, the one command): TensorFlow's start-up lines
kept off the command's terminal (facemask.tf_startup says which lines, and how).

The one module whose import does something: it sets TF_CPP_MIN_LOG_LEVEL=2 (unless set) and installs the
import hook that filters stderr while TensorFlow is imported. It must run before anything imports
TensorFlow, so a command module imports it on its first import line, before its other imports
(`# isort: skip` keeps it there). Library modules never import it: `import facemask`, or any library
module, leaves sys.meta_path and file descriptor 2 as they were (a notebook calls
`tf_startup.import_tensorflow_quietly()` instead).
"""

from facemask.tf_startup import silence_tensorflow_start_up

silence_tensorflow_start_up()
