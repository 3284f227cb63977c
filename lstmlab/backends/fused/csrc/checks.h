// The checks of every input of the public ops lstmlab::fused_layer and
// lstmlab::fused_layer_backward, before any kernel reads them: the cell and its
// flags, then each tensor against the shape the sizes and flags imply, x's dtype and
// the CPU. A failure raises a RuntimeError (TORCH_CHECK) that says what was expected.
#pragma once

#include "schema.h"

namespace lstmlab {

Cell check_forward(int64_t cell, const std::vector<int64_t>& flags, const ForwardInputs& in);
Cell check_backward(int64_t cell, const std::vector<int64_t>& flags, const BackwardInputs& in);

}  // namespace lstmlab
