#include "idtune/core/objective.h"

#include "idtune/core/error.h"

#include <cmath>

namespace idtune {

void validate(const Objective& o) {
  check_option(std::isfinite(o.lambda) && o.lambda >= 0, "objective.lambda", o.lambda,
               "must be a finite number >= 0");
  check_option(std::isfinite(o.beta) && o.beta >= 0, "objective.beta", o.beta,
               "must be a finite number >= 0");
  check_option(o.lambda > 0 || o.beta > 0, "objective.lambda", o.lambda,
               "and objective.beta = 0: there is nothing to optimise");
}

}  // namespace idtune
