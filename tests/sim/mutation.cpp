// The active mutation of the simulator's build (common/mutation.h).
#include "common/mutation.h"

#include <atomic>

namespace bitacora::sim {
namespace {
std::atomic<Mutation> g_mutation{Mutation::None};
} // namespace

Mutation ActiveMutation() { return g_mutation.load(std::memory_order_relaxed); }
void SetMutation(Mutation mutation) { g_mutation.store(mutation, std::memory_order_relaxed); }

} // namespace bitacora::sim
