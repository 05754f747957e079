"""Images in: the official MNIST and Fashion-MNIST files, their class names, and decoding of user images."""
