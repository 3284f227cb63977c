// The large products outside the time loop, the same for every cell: before the
// forward loop the input projection of all steps, after the backward loop the
// gradients of the input, the weights and the biases.
#pragma once

#include <tuple>
#include <utility>

#include "schema.h"

namespace lstmlab {

// b_ih + b_hh, or undefined without biases.
Tensor summed_bias(const Tensor& b_ih, const Tensor& b_hh);

// W x + bias of all T steps as one product: (T, B, G*H) from x (T, B, I), w_ih (G*H, I)
// and bias (G*H,) or undefined. The pointwise pass later rewrites it in place.
Tensor input_projection(const Tensor& x, const Tensor& w_ih, const Tensor& bias);

// (K, H) = sum_t dZ[t]^T hprev[t] with hprev[0] = h0 and hprev[t] = hs[t-1]: a
// recurrent weight gradient as two large products. dZ (T, B, ld) read from column off.
Tensor recurrent_grad(const Tensor& dZ, int64_t off, int64_t K, const Tensor& hs, const Tensor& h0);

// dx (when in.need_dx), dw_ih, dw_hh, db_ih and db_hh into r, from the gradients of all
// steps' pre-activations: dZx (T, B, G*H) of the input part W x + b_ih, dZh of the
// recurrent part U h + b_hh (the same tensor except for the GRU with reset "after").
// The recurrent part multiplies the previous state (in.h0, in.hs), except with the
// GRU's reset "before", whose n block multiplies r ⊙ h: then `gated` (T, B, H) holds it.
void weight_grads(BackwardResult& r, const BackwardInputs& in, const Tensor& dZx, const Tensor& dZh,
                  const Tensor& gated = Tensor());

// `in` for weight_grads under (D1) recurrent dropout: the recurrent products multiplied
// m ⊙ h, so in.h0 and in.hs become m ⊙ h0 and m ⊙ hs (one product over all steps, m
// being the same at every step); `in` itself without a mask.
BackwardInputs with_masked_states(const BackwardInputs& in);

// Layer normalisation (lstmlab/cells/layer_norm.py), N over the last axis, ε as there.
constexpr double kLayerNormEps = 1e-5;

// (N1) of all T steps as one product and one normalisation: {γ_ih ⊙ N(W x) + bias, W x},
// (T, B, G*H) each; the first is the gates' buffer as input_projection's, the second what
// backward needs.
std::pair<Tensor, Tensor> normalized_input_projection(const Tensor& x, const Tensor& w_ih, const Tensor& gain,
                                                      const Tensor& bias);

// weight_grads under (N1) and (N2) (reset "after" for the GRU): dZx and dZh the gradients
// of the normalised sums (what the biases get), dUh (T, B, G*H) that of U h before (N2).
// Sets dx, dw_ih, dw_hh, the biases' gradients and (N1)'s gain's, dw_ln_ih (the cells sum
// (N2)'s in their row passes).
void normalized_weight_grads(BackwardResult& r, const BackwardInputs& in, const Tensor& dZx, const Tensor& dZh,
                             const Tensor& dUh);

}  // namespace lstmlab
