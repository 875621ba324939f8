//! Data set readers: .npy, .npz and IDX (MNIST / Fashion-MNIST).
