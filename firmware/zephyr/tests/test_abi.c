#include "unit.h"
void suite_abi(void) {}
