/* radprep — placeholder main until cli/ lands. */
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "radprep: not built yet\n");
    return 1;
}
