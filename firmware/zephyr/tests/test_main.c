/* Runs every suite; the exit code is the number of failed checks (0: all passed). */
#include "unit.h"

int unit_failures;
int unit_checks;

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	suite_sha256();
	suite_wire();
	suite_auth();
	suite_coap();
	suite_agent();
	suite_abi();
	suite_masters();
	suite_oscore();
	suite_oscore_vectors();
	printf("edgerm core unit tests: %d checks, %d failures\n", unit_checks, unit_failures);
	return unit_failures > 255 ? 255 : unit_failures;
}
