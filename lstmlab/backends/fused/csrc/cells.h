// One layer in one direction of each cell family, forward and backward; each in
// its own file (lstm.cpp, gru.cpp, rnn.cpp). Inputs are checked (checks.h) and
// contiguous; the equations and their tags are in lstmlab/cells/.
//
// Forward: the input projection of all T steps is one matrix product before the
// loop (products.h); each step is one recurrent product (two for the GRU with reset
// "before", for FGR's gate-to-gate term and for the projection) and one pass over
// the batch rows doing all pointwise work. Backward: each step is the pointwise pass
// and the recurrent products for dh; the weight and input gradients are large
// products after the loop (products.h).
#pragma once

#include "schema.h"

namespace lstmlab {

ForwardResult lstm_forward(const LSTMFlags& flags, const ForwardInputs& in);
BackwardResult lstm_backward(const LSTMFlags& flags, const BackwardInputs& in);

// Inference (nothing saved) of the LSTM without FGR and projection: its own path
// (lstm_inference.cpp), the same results to rounding. Whether it runs `in`.
bool lstm_inference_runs(const LSTMFlags& flags, const ForwardInputs& in);
ForwardResult lstm_inference(const LSTMFlags& flags, const ForwardInputs& in);

ForwardResult gru_forward(const GRUFlags& flags, const ForwardInputs& in);
BackwardResult gru_backward(const GRUFlags& flags, const BackwardInputs& in);

ForwardResult rnn_forward(const RNNFlags& flags, const ForwardInputs& in);
BackwardResult rnn_backward(const RNNFlags& flags, const BackwardInputs& in);

}  // namespace lstmlab
