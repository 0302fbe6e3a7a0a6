#pragma once
// The monotonic clock in seconds, for deadlines and back-offs (not for what is logged or saved:
// that is the wall clock). The rules engine reads time through its own Clock, for tests.
namespace knock {

double mono_seconds() noexcept;

}  // namespace knock
