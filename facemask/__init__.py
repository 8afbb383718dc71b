"""Face mask detection with Keras CNNs: one module per stage of the data's journey.

sample   - a small generated data set in the Kaggle layout (photos + train.csv)
data     - the tf.data input pipeline and augmentation
models   - the scratch CNN and the fine-tuned VGG16, saving and loading
train    - training (and `python -m facemask.train`)
evaluate - metrics, curves and the misclassified grid
predict  - [P(mask), P(no-mask)] for images (and `python -m facemask.predict`)
detect   - find faces, classify them, draw green/red boxes (and `python -m facemask.detect`)
app      - the Gradio web front-end (`python -m facemask.app`)
"""

CLASS_NAMES = ["mask", "no-mask"]
IMAGE_SIZE = (224, 224)
