// Runs a fuzz target over corpus files without libFuzzer, so that builds with
// other compilers still check every seed (and every past crash) in the unit suite.
// Each input runs on a thread with a 512 KiB stack (as run_fuzz.sh's ulimit does for
// libFuzzer), so that recursion once per nesting level shows as a crash here too.
#include <pthread.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr size_t kStackBytes = 512 * 1024;

void* RunOne(void* arg)
{
    const auto* bytes = static_cast<const std::vector<uint8_t>*>(arg);
    LLVMFuzzerTestOneInput(bytes->data(), bytes->size());
    return nullptr;
}

bool RunOnSmallStack(const std::vector<uint8_t>& bytes)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kStackBytes);
    pthread_t thread;
    const bool started = pthread_create(&thread, &attr, &RunOne, const_cast<std::vector<uint8_t>*>(&bytes)) == 0;
    pthread_attr_destroy(&attr);
    if (started) pthread_join(thread, nullptr);
    return started;
}

} // namespace

int main(int argc, char* argv[])
{
    size_t inputs = 0;
    for (int i = 1; i < argc; ++i) {
        std::vector<std::filesystem::path> files;
        if (std::filesystem::is_directory(argv[i])) {
            for (const auto& entry : std::filesystem::directory_iterator(argv[i])) files.push_back(entry.path());
        } else {
            files.emplace_back(argv[i]);
        }
        for (const auto& file : files) {
            std::ifstream in(file, std::ios::binary);
            const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            if (!RunOnSmallStack(bytes)) {
                std::fprintf(stderr, "cannot start a thread for %s\n", file.c_str());
                return 1;
            }
            ++inputs;
        }
    }
    std::printf("replayed %zu inputs\n", inputs);
    return inputs > 0 ? 0 : 1;
}
