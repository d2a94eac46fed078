#include "daemon/init.h"

int main(int argc, char* argv[])
{
    return bitacora::DaemonMain(argc, argv);
}
