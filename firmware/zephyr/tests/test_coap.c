#include "unit.h"
void suite_coap(void) {}
