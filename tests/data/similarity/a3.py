import numpy as np

# Batch / layer / spatial batch / spatial group normalization.
# I wrote these with explicit loops over the thing being normalized
# (features, samples, channels, groups) because I find it easier to see
# what is going on. All statistics are computed in float64 and results are
# converted back to the dtype of the input at the end.


def _normalize_one_vector(values, epsilon):
    """Normalize a 1-D float64 vector; return (normalized, inverse_std)."""
    vector_mean = np.mean(values)
    centered_values = values - vector_mean
    vector_variance = np.mean(centered_values * centered_values)   # biased
    inverse_standard_deviation = 1.0 / np.sqrt(vector_variance + epsilon)
    return centered_values * inverse_standard_deviation, vector_mean, vector_variance, inverse_standard_deviation


def _backprop_one_vector(upstream_of_normalized, normalized_values, inverse_standard_deviation):
    """Gradient through y = (v - mean(v)) / sqrt(var(v) + eps) for a 1-D vector v.

    Given dL/dy (upstream_of_normalized), returns dL/dv.
    """
    number_of_elements = normalized_values.shape[0]
    sum_of_upstream = np.sum(upstream_of_normalized)
    sum_of_upstream_times_normalized = np.sum(upstream_of_normalized * normalized_values)
    return (inverse_standard_deviation / number_of_elements) * (
        number_of_elements * upstream_of_normalized
        - sum_of_upstream
        - normalized_values * sum_of_upstream_times_normalized
    )


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    epsilon = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)

    number_of_samples, number_of_features = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(number_of_features, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(number_of_features, dtype=x.dtype))

    x_in_double = x.astype(np.float64)
    output = np.zeros((number_of_samples, number_of_features), dtype=np.float64)
    cache = None

    if mode == "train":
        normalized_x = np.zeros_like(x_in_double)
        inverse_stds = np.zeros(number_of_features)
        new_running_mean = np.array(running_mean, copy=True)
        new_running_var = np.array(running_var, copy=True)
        # each feature (column) is normalized over the batch
        for feature_index in range(number_of_features):
            column = x_in_double[:, feature_index]
            normalized_column, column_mean, column_variance, inverse_std = _normalize_one_vector(column, epsilon)
            normalized_x[:, feature_index] = normalized_column
            inverse_stds[feature_index] = inverse_std
            output[:, feature_index] = gamma[feature_index] * normalized_column + beta[feature_index]
            # exponential moving averages of the batch statistics
            new_running_mean[feature_index] = momentum * float(running_mean[feature_index]) + (1.0 - momentum) * column_mean
            new_running_var[feature_index] = momentum * float(running_var[feature_index]) + (1.0 - momentum) * column_variance
        running_mean, running_var = new_running_mean, new_running_var
        cache = {
            "normalized_x": normalized_x,
            "inverse_stds": inverse_stds,
            "gamma": gamma,
            "input_dtype": x.dtype,
        }
    elif mode == "test":
        for feature_index in range(number_of_features):
            standard_deviation = np.sqrt(float(running_var[feature_index]) + epsilon)
            normalized_column = (x_in_double[:, feature_index] - float(running_mean[feature_index])) / standard_deviation
            output[:, feature_index] = gamma[feature_index] * normalized_column + beta[feature_index]
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return output.astype(x.dtype), cache


def batchnorm_backward(dout, cache):
    normalized_x = cache["normalized_x"]
    inverse_stds = cache["inverse_stds"]
    gamma = cache["gamma"]
    number_of_samples, number_of_features = dout.shape
    upstream = dout.astype(np.float64)

    gradient_x = np.zeros((number_of_samples, number_of_features))
    gradient_gamma = np.zeros(number_of_features)
    gradient_beta = np.zeros(number_of_features)

    for feature_index in range(number_of_features):
        upstream_column = upstream[:, feature_index]
        normalized_column = normalized_x[:, feature_index]
        inverse_std = inverse_stds[feature_index]
        gradient_beta[feature_index] = np.sum(upstream_column)
        gradient_gamma[feature_index] = np.sum(upstream_column * normalized_column)
        upstream_of_normalized = upstream_column * gamma[feature_index]

        # chain rule, one node at a time, for this single feature
        centered_column = normalized_column / inverse_std           # x - mean
        gradient_inverse_std = np.sum(upstream_of_normalized * centered_column)
        # inverse_std = (var + eps)^(-1/2)  ->  d/dvar = -1/2 * inverse_std^3
        gradient_variance = -0.5 * inverse_std ** 3 * gradient_inverse_std
        gradient_centered = upstream_of_normalized * inverse_std \
            + gradient_variance * 2.0 * centered_column / number_of_samples
        gradient_mean = -np.sum(gradient_centered)
        gradient_x[:, feature_index] = gradient_centered + gradient_mean / number_of_samples

    return (gradient_x.astype(cache["input_dtype"]),
            gradient_gamma.astype(gamma.dtype),
            gradient_beta.astype(gamma.dtype))


def batchnorm_backward_alt(dout, cache):
    normalized_x = cache["normalized_x"]
    inverse_stds = cache["inverse_stds"]
    gamma = cache["gamma"]
    number_of_samples, number_of_features = dout.shape
    upstream = dout.astype(np.float64)

    gradient_x = np.zeros((number_of_samples, number_of_features))
    gradient_gamma = np.zeros(number_of_features)
    gradient_beta = np.zeros(number_of_features)
    for feature_index in range(number_of_features):
        upstream_column = upstream[:, feature_index]
        gradient_beta[feature_index] = upstream_column.sum()
        gradient_gamma[feature_index] = (upstream_column * normalized_x[:, feature_index]).sum()
        # simplified closed form
        gradient_x[:, feature_index] = _backprop_one_vector(
            upstream_column * gamma[feature_index],
            normalized_x[:, feature_index],
            inverse_stds[feature_index],
        )
    return (gradient_x.astype(cache["input_dtype"]),
            gradient_gamma.astype(gamma.dtype),
            gradient_beta.astype(gamma.dtype))


def layernorm_forward(x, gamma, beta, ln_param):
    epsilon = ln_param.get("eps", 1e-5)
    number_of_samples, number_of_features = x.shape
    x_in_double = x.astype(np.float64)
    normalized_x = np.zeros_like(x_in_double)
    inverse_stds = np.zeros(number_of_samples)

    # each sample (row) is normalized over its own features
    for sample_index in range(number_of_samples):
        normalized_row, _, _, inverse_std = _normalize_one_vector(x_in_double[sample_index], epsilon)
        normalized_x[sample_index] = normalized_row
        inverse_stds[sample_index] = inverse_std

    output = gamma * normalized_x + beta
    cache = {
        "normalized_x": normalized_x,
        "inverse_stds": inverse_stds,
        "gamma": gamma,
        "input_dtype": x.dtype,
    }
    return output.astype(x.dtype), cache


def layernorm_backward(dout, cache):
    normalized_x = cache["normalized_x"]
    inverse_stds = cache["inverse_stds"]
    gamma = cache["gamma"]
    upstream = dout.astype(np.float64)
    number_of_samples = dout.shape[0]

    gradient_beta = np.sum(upstream, axis=0)
    gradient_gamma = np.sum(upstream * normalized_x, axis=0)
    upstream_of_normalized = upstream * gamma

    gradient_x = np.zeros_like(upstream)
    for sample_index in range(number_of_samples):
        gradient_x[sample_index] = _backprop_one_vector(
            upstream_of_normalized[sample_index],
            normalized_x[sample_index],
            inverse_stds[sample_index],
        )
    return (gradient_x.astype(cache["input_dtype"]),
            gradient_gamma.astype(gamma.dtype),
            gradient_beta.astype(gamma.dtype))


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param["mode"]
    epsilon = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    batch_size, number_of_channels, height, width = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(number_of_channels, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(number_of_channels, dtype=x.dtype))

    x_in_double = x.astype(np.float64)
    output = np.zeros_like(x_in_double)
    cache = None

    if mode == "train":
        normalized_x = np.zeros_like(x_in_double)
        inverse_stds = np.zeros(number_of_channels)
        new_running_mean = np.array(running_mean, copy=True)
        new_running_var = np.array(running_var, copy=True)
        # each channel: statistics over batch and both spatial dimensions
        for channel_index in range(number_of_channels):
            channel_values = x_in_double[:, channel_index, :, :].ravel()
            normalized_values, channel_mean, channel_variance, inverse_std = \
                _normalize_one_vector(channel_values, epsilon)
            normalized_channel = normalized_values.reshape(batch_size, height, width)
            normalized_x[:, channel_index, :, :] = normalized_channel
            inverse_stds[channel_index] = inverse_std
            output[:, channel_index, :, :] = gamma[channel_index] * normalized_channel + beta[channel_index]
            new_running_mean[channel_index] = momentum * float(running_mean[channel_index]) + (1.0 - momentum) * channel_mean
            new_running_var[channel_index] = momentum * float(running_var[channel_index]) + (1.0 - momentum) * channel_variance
        running_mean, running_var = new_running_mean, new_running_var
        cache = {
            "normalized_x": normalized_x,
            "inverse_stds": inverse_stds,
            "gamma": gamma,
            "input_dtype": x.dtype,
        }
    elif mode == "test":
        for channel_index in range(number_of_channels):
            standard_deviation = np.sqrt(float(running_var[channel_index]) + epsilon)
            normalized_channel = (x_in_double[:, channel_index] - float(running_mean[channel_index])) / standard_deviation
            output[:, channel_index] = gamma[channel_index] * normalized_channel + beta[channel_index]
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return output.astype(x.dtype), cache


def spatial_batchnorm_backward(dout, cache):
    normalized_x = cache["normalized_x"]
    inverse_stds = cache["inverse_stds"]
    gamma = cache["gamma"]
    batch_size, number_of_channels, height, width = dout.shape
    upstream = dout.astype(np.float64)

    gradient_x = np.zeros_like(upstream)
    gradient_gamma = np.zeros(number_of_channels)
    gradient_beta = np.zeros(number_of_channels)
    for channel_index in range(number_of_channels):
        upstream_channel = upstream[:, channel_index].ravel()
        normalized_channel = normalized_x[:, channel_index].ravel()
        gradient_beta[channel_index] = np.sum(upstream_channel)
        gradient_gamma[channel_index] = np.sum(upstream_channel * normalized_channel)
        gradient_channel = _backprop_one_vector(
            upstream_channel * gamma[channel_index],
            normalized_channel,
            inverse_stds[channel_index],
        )
        gradient_x[:, channel_index] = gradient_channel.reshape(batch_size, height, width)
    return (gradient_x.astype(cache["input_dtype"]),
            gradient_gamma.astype(gamma.dtype),
            gradient_beta.astype(gamma.dtype))


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    epsilon = gn_param.get("eps", 1e-5)
    batch_size, number_of_channels, height, width = x.shape
    channels_per_group = number_of_channels // G
    x_in_double = x.astype(np.float64)
    normalized_x = np.zeros_like(x_in_double)
    inverse_stds = np.zeros((batch_size, G))

    # every (sample, group) pair gets its own mean and variance
    for sample_index in range(batch_size):
        for group_index in range(G):
            first_channel = group_index * channels_per_group
            last_channel = first_channel + channels_per_group
            group_block = x_in_double[sample_index, first_channel:last_channel]
            normalized_values, _, _, inverse_std = _normalize_one_vector(group_block.ravel(), epsilon)
            normalized_x[sample_index, first_channel:last_channel] = normalized_values.reshape(group_block.shape)
            inverse_stds[sample_index, group_index] = inverse_std

    # per-channel scale and shift (gamma and beta have shape (1, C, 1, 1))
    output = gamma * normalized_x + beta
    cache = {
        "normalized_x": normalized_x,
        "inverse_stds": inverse_stds,
        "gamma": gamma,
        "number_of_groups": G,
        "input_dtype": x.dtype,
    }
    return output.astype(x.dtype), cache


def spatial_groupnorm_backward(dout, cache):
    normalized_x = cache["normalized_x"]
    inverse_stds = cache["inverse_stds"]
    gamma = cache["gamma"]
    number_of_groups = cache["number_of_groups"]
    batch_size, number_of_channels, height, width = dout.shape
    channels_per_group = number_of_channels // number_of_groups
    upstream = dout.astype(np.float64)

    gradient_beta = np.sum(upstream, axis=(0, 2, 3), keepdims=True)
    gradient_gamma = np.sum(upstream * normalized_x, axis=(0, 2, 3), keepdims=True)
    upstream_of_normalized = upstream * gamma

    gradient_x = np.zeros_like(upstream)
    for sample_index in range(batch_size):
        for group_index in range(number_of_groups):
            first_channel = group_index * channels_per_group
            last_channel = first_channel + channels_per_group
            block_shape = (channels_per_group, height, width)
            gradient_block = _backprop_one_vector(
                upstream_of_normalized[sample_index, first_channel:last_channel].ravel(),
                normalized_x[sample_index, first_channel:last_channel].ravel(),
                inverse_stds[sample_index, group_index],
            )
            gradient_x[sample_index, first_channel:last_channel] = gradient_block.reshape(block_shape)

    return (gradient_x.astype(cache["input_dtype"]),
            gradient_gamma.astype(gamma.dtype),
            gradient_beta.astype(gamma.dtype))
