#pragma once
namespace kiln {
int RunCli(int argc, char** argv);
}
