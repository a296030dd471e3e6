# expect: forbidden
import sys
sys.exit(0)
